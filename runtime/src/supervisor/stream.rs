//! The call's trace streamed to the test process during the call: each
//! chunk of records (and of their values) that can no longer change is
//! written to the memfd both processes share (made by `launch`) and freed
//! here; the reply at the end of the call carries the rest and where the
//! streamed chunks lie (`Streamed`), and the test process reads them back.

use std::os::unix::fs::FileExt;

use super::call::Call;
use super::core::Supervisor;
use crate::trace::store::Part;

impl Supervisor {
    /// Streams the call's chunks that can no longer change (see
    /// `Records::stream_out`). A record may still change while a thread
    /// has a write pending (its bytes are read back at the thread's next
    /// stop) or while an access waits for its callers (out of bounds, or
    /// breaking a declared contract): the
    /// oldest of those is the limit. Called after each stop is handled;
    /// costs a comparison until a second chunk of records exists. A write
    /// the memfd refuses (ENOSPC, EFBIG past `RLIMIT_FSIZE`, ...) ends
    /// streaming for the call, silently: the rest stays here and goes in
    /// the reply, nothing is lost (`Stats::streamed_bytes` shows where it
    /// stopped).
    pub(super) fn stream_finished_chunks(&mut self) {
        let Some(call) = &mut self.call else { return };
        if !call.streams || call.accesses.chunks_held() < 2 {
            return;
        }
        let Some(memfd) = &self.memfd else { return };
        let pending = self
            .threads
            .values()
            .flat_map(|t| t.pending.iter().map(|p| p.index))
            .min();
        let limit = pending
            .into_iter()
            .chain(call.flagged.iter().copied())
            .min()
            .unwrap_or(usize::MAX);
        let Call {
            accesses,
            streamed,
            streamed_end,
            stats,
            streams,
            ..
        } = &mut *call;
        let mut failed = false;
        accesses.stream_out(limit, |part| {
            let bytes = match part {
                Part::Records(b) | Part::Values(b) => b,
            };
            if memfd.write_all_at(bytes, *streamed_end).is_err() {
                failed = true;
                return false;
            }
            match part {
                Part::Records(_) => streamed.records.push(*streamed_end),
                Part::Values(_) => streamed.values.push((*streamed_end, bytes.len() as u64)),
            }
            *streamed_end += bytes.len() as u64;
            stats.streamed_bytes += bytes.len() as u64;
            true
        });
        if failed {
            *streams = false;
        }
    }
}
