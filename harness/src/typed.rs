//! Typed guarded memory: a value or a slice of `T` on guarded pages, aligned
//! for `T`, whose fields (from `#[derive(Fields)]`) name the bytes in traces.

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use traced_ffi_runtime::{Field, Region, RegionId};

use crate::buffer::Buffer;

/// The field layout of a plain-old-data type, for traces that name fields
/// (`cfg.level`) and for [`Trace::unwritten_fields`](crate::Trace::unwritten_fields).
/// Derive it with `#[derive(traced_ffi::Fields)]` on a `#[repr(C)]` struct;
/// integers, floats, raw pointers and arrays of them implement it with no
/// named fields of their own.
///
/// # Safety
///
/// Every bit pattern of `size_of::<Self>()` bytes (padding aside) must be a
/// valid `Self`: native code writes these bytes, and [`Typed`] and
/// [`TypedSlice`] hand them out as `Self`. The derive checks this by
/// requiring `Fields` of every field's type.
pub unsafe trait Fields: Copy {
    /// The named fields, by offset; empty for a type that is one unit.
    fn fields() -> Vec<Field>;
}

macro_rules! leaf_fields {
    ($($t:ty),*) => {$(
        // SAFETY: every bit pattern is a valid value of this primitive type.
        unsafe impl Fields for $t {
            fn fields() -> Vec<Field> {
                Vec::new()
            }
        }
    )*};
}

leaf_fields!(
    u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32, f64
);

// SAFETY: every bit pattern is a valid raw pointer.
unsafe impl<T> Fields for *const T {
    fn fields() -> Vec<Field> {
        Vec::new()
    }
}

// SAFETY: every bit pattern is a valid raw pointer.
unsafe impl<T> Fields for *mut T {
    fn fields() -> Vec<Field> {
        Vec::new()
    }
}

// SAFETY: an array of plain-old-data elements is plain old data.
unsafe impl<T: Fields, const N: usize> Fields for [T; N] {
    /// One unit for elements without fields; `[i].field` for each element's
    /// fields otherwise.
    fn fields() -> Vec<Field> {
        let inner = T::fields();
        if inner.is_empty() {
            return Vec::new();
        }
        let size = size_of::<T>();
        (0..N)
            .flat_map(|i| {
                inner.iter().map(move |f| Field {
                    name: format!("[{i}].{}", f.name),
                    offset: i * size + f.offset,
                    len: f.len,
                })
            })
            .collect()
    }
}

/// Adds field `name` at `offset` of `len` bytes to `out`: itself if its type
/// has no fields (`inner` empty), else each of its fields as `name.inner`.
/// What `#[derive(Fields)]` expands to; not a public API.
#[doc(hidden)]
pub fn push_field(out: &mut Vec<Field>, name: &str, offset: usize, len: usize, inner: Vec<Field>) {
    if inner.is_empty() {
        out.push(Field {
            name: name.to_owned(),
            offset,
            len,
        });
        return;
    }
    for f in inner {
        let sep = if f.name.starts_with('[') { "" } else { "." };
        out.push(Field {
            name: format!("{name}{sep}{}", f.name),
            offset: offset + f.offset,
            len: f.len,
        });
    }
}

/// A `T` on guarded pages, aligned for `T`; made by [`Tracer::value`](crate::Tracer::value).
/// Dereferences to the `T` between calls; native code gets [`Typed::as_mut_ptr`].
#[derive(Debug)]
pub struct Typed<T: Fields> {
    pub(crate) buffer: Buffer,
    pub(crate) ty: PhantomData<T>,
}

impl<T: Fields> Typed<T> {
    /// The value's address.
    pub fn as_ptr(&self) -> *const T {
        self.buffer.as_ptr().cast()
    }

    /// The value's address, for native code to write through.
    pub fn as_mut_ptr(&mut self) -> *mut T {
        self.buffer.as_mut_ptr().cast()
    }

    /// The guarded bytes underneath.
    pub fn bytes(&self) -> &Buffer {
        &self.buffer
    }
}

impl<T: Fields> Region for Typed<T> {
    fn region_id(&self) -> RegionId {
        self.buffer.region_id()
    }
}

impl<T: Fields> Deref for Typed<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the buffer holds size_of::<T>() bytes aligned for T (made by
        // `Tracer::value`), and any bit pattern is a valid T (`Fields`).
        unsafe { &*self.as_ptr() }
    }
}

impl<T: Fields> DerefMut for Typed<T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference.
        unsafe { &mut *self.as_mut_ptr() }
    }
}

/// `n` values of `T` on guarded pages, aligned for `T`; made by
/// [`Tracer::slice`](crate::Tracer::slice). Dereferences to `[T]`.
#[derive(Debug)]
pub struct TypedSlice<T: Fields> {
    pub(crate) buffer: Buffer,
    pub(crate) len: usize,
    pub(crate) ty: PhantomData<T>,
}

impl<T: Fields> TypedSlice<T> {
    /// The first element's address.
    pub fn as_ptr(&self) -> *const T {
        self.buffer.as_ptr().cast()
    }

    /// The first element's address, for native code to write through.
    pub fn as_mut_ptr(&mut self) -> *mut T {
        self.buffer.as_mut_ptr().cast()
    }

    /// The guarded bytes underneath.
    pub fn bytes(&self) -> &Buffer {
        &self.buffer
    }
}

impl<T: Fields> Region for TypedSlice<T> {
    fn region_id(&self) -> RegionId {
        self.buffer.region_id()
    }
}

impl<T: Fields> Deref for TypedSlice<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: the buffer holds len * size_of::<T>() bytes aligned for T
        // (made by `Tracer::slice`), and any bit pattern is a valid T.
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.len) }
    }
}

impl<T: Fields> DerefMut for TypedSlice<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.as_mut_ptr(), self.len) }
    }
}
