//! Argon2's working memory: one buffer per thread, reused by every hash, in huge pages.
//!
//! A new hash's 19 MiB are 4,864 pages of 4 KiB. Allocated afresh, each costs a page fault;
//! kept but in small pages, argon2's reads at random places in the buffer miss the TLB
//! nearly every time, and the page-table walks compete with the hash itself for the cache
//! that two workers share. In 2 MiB pages (transparent huge pages, asked for with
//! `madvise`) the whole buffer takes ten TLB entries.

use std::ptr::NonNull;

use argon2::Block;

/// The alignment and size granule of the buffer: one huge page on x86-64 and arm64.
const HUGE_PAGE: usize = 2 << 20;

/// Zeroed, huge-page-aligned memory for argon2 blocks, mapped for itself alone.
pub(super) struct Blocks {
    start: NonNull<Block>,
    len: usize,
    /// The whole mapping, alignment slack included, for `munmap`.
    mapping: (*mut libc::c_void, usize),
}

impl Blocks {
    /// Memory for `len` blocks, or `None` if it cannot be mapped.
    pub(super) fn new(len: usize) -> Option<Blocks> {
        let bytes = len
            .checked_mul(size_of::<Block>())?
            .checked_next_multiple_of(HUGE_PAGE)?
            .max(HUGE_PAGE);
        // One huge page more than needed, to start on a huge-page boundary inside it.
        let mapped = bytes.checked_add(HUGE_PAGE)?;
        // SAFETY: a fresh anonymous private mapping, which the kernel fills with zeros.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                mapped,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return None;
        }
        let offset = (base as usize).next_multiple_of(HUGE_PAGE) - base as usize;
        // SAFETY: offset < HUGE_PAGE, so `bytes` from there stay inside the mapping.
        let start = unsafe { base.cast::<u8>().add(offset) };
        advise_huge_pages(start, bytes);
        Some(Blocks {
            start: NonNull::new(start.cast())?,
            len: bytes / size_of::<Block>(),
            mapping: (base, mapped),
        })
    }

    /// How many blocks fit.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The first `len` blocks.
    pub(super) fn first(&mut self, len: usize) -> &mut [Block] {
        // SAFETY: `start` holds `self.len` blocks (zeroed by the kernel, then only ever
        // written as blocks), a block is plain integers, valid for any bytes, and
        // `&mut self` makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.start.as_ptr(), len.min(self.len)) }
    }
}

impl Drop for Blocks {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.mapping.0, self.mapping.1) };
    }
}

/// Asks the kernel for huge pages under `[start, start + bytes)` before any of it is
/// touched. Only advice: without transparent huge pages the memory works in small pages.
#[cfg(target_os = "linux")]
fn advise_huge_pages(start: *mut u8, bytes: usize) {
    // SAFETY: the range is inside one mapping of ours; madvise does not touch its contents.
    unsafe { libc::madvise(start.cast(), bytes, libc::MADV_HUGEPAGE) };
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages(_start: *mut u8, _bytes: usize) {}
