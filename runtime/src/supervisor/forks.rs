//! Processes the test process forks: traced (so that their copies of the
//! protected pages can be opened for them), never part of a call, let go at
//! `exec`.

use std::io;

use libc::pid_t;

use super::core::Supervisor;
use super::report::report;

impl Supervisor {
    /// The test process forked: the child is traced (so that its copy of the
    /// protected pages can be opened for it) but is not part of any call.
    /// A vfork child (`posix_spawn`, `system`) shares our memory until it
    /// execs: it is traced so that its system calls that our filters stop
    /// (glibc's `posix_spawn` child sets its signal mask) are let through,
    /// instead of failing with `ENOSYS` for lack of a tracer.
    pub(super) fn on_fork(&mut self, tid: pid_t, vfork: bool) {
        if let Ok(child) = self.pt.geteventmsg(tid) {
            self.foreign.insert(child as pid_t);
            if vfork {
                self.vforked.insert(child as pid_t);
            }
            self.announce(child as pid_t);
        }
        self.resume(tid, 0);
    }

    /// True if `tid` is not a thread of the test process: a forked child or
    /// one of its threads.
    pub(super) fn is_foreign(&self, tid: pid_t) -> bool {
        !self.births.live.contains(&tid)
    }

    /// A forked child touched its copy of a protected page: open all of them
    /// in the child (its accesses are not traced) and let it go on.
    pub(super) fn open_pages_in_child(&mut self, tid: pid_t) {
        let spans = self.all_protected();
        let result = (|| -> io::Result<()> {
            let regs = self.pt.getregs(tid)?;
            let mut deferred = Vec::new();
            for span in spans {
                self.inject_mprotect(
                    tid,
                    &regs,
                    span,
                    libc::PROT_READ | libc::PROT_WRITE,
                    &mut deferred,
                )?;
            }
            self.pt.setregs(tid, &regs)
        })();
        match result {
            Ok(()) => self.resume(tid, 0),
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
            Err(e) => {
                report(format_args!(
                    "cannot open the protected pages in forked process {tid}: {e}"
                ));
                self.resume(tid, libc::SIGSEGV);
            }
        }
    }
}
