// SPDX-License-Identifier: GPL-2.0

//! The uAPI as the module sees it: the layout in `uapi_abi.rs` (shared
//! with `tools/uapi`, whose test checks it against
//! `include/uapi/movgem.h`), plus what copying it to and from user memory
//! needs.

use kernel::types::{AsBytes, FromBytes};

pub(crate) use crate::uapi_abi::*;

macro_rules! plain_old_data {
    ($($name:ident),* $(,)?) => {$(
        // SAFETY: `repr(C)` with only integer fields and no padding (the
        // size assertions in `uapi_abi.rs`, the header test in
        // `tools/uapi`): every bit pattern is valid.
        unsafe impl FromBytes for $name {}
        // SAFETY: as above, there are no padding bytes to leak.
        unsafe impl AsBytes for $name {}
    )*};
}

plain_old_data!(
    Create, Close, Rw, Mmap, SetDomain, Madvise, ExecObject, Execbuf, Busy, Wait, Pin, Vmap,
    Userptr, Info,
);
