//! The process's heap, counted, with an optional cap (`--max-memory`). Every allocation goes
//! through mimalloc (which keeps freed pages for reuse: each plan step allocates
//! activation-sized buffers); one that would take the heap over the cap ends the process with a
//! one-line `error:` and exit code 2 instead of an out-of-memory kill. Outputs are written
//! atomically, so nothing is left half-written. Memory-mapped model weights are not heap and do
//! not count.
//!
//! The counting allocator (`Capped`) is the `edgetune` binary's; it comes with the `cli`
//! feature. Without it (a program embedding the library, with its own allocator) nothing is
//! counted, `--max-memory` does not exist, and the checks use what the system has available.

use std::sync::atomic::{AtomicUsize, Ordering};

#[cfg(feature = "cli")]
pub use capped::Capped;

static IN_USE: AtomicUsize = AtomicUsize::new(0);
static CAP: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Caps the heap at `bytes` from now on.
pub fn set_cap(bytes: usize) {
    CAP.store(bytes, Ordering::SeqCst);
}

/// Heap bytes this process can still take: what the system has available (Linux
/// `MemAvailable`), and no more than `--max-memory` leaves; `None` where neither is known.
pub fn available() -> Option<usize> {
    let cap = CAP.load(Ordering::Relaxed);
    let left = (cap != usize::MAX).then(|| cap.saturating_sub(in_use()));
    let system = std::fs::read_to_string("/proc/meminfo").ok().and_then(|text| {
        let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
        let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
        kib.checked_mul(1024)
    });
    match (left, system) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Refuses work that needs about `bytes` of heap when that is more than is available: a
/// one-line error naming `what` (exit 2) before anything is allocated, instead of an
/// out-of-memory kill half way.
pub fn check_fits(bytes: usize, what: impl FnOnce() -> String) -> crate::error::Result<()> {
    let Some(free) = available().filter(|&free| bytes > free) else { return Ok(()) };
    let cap = CAP.load(Ordering::Relaxed);
    let under = if cap == usize::MAX { String::new() } else { format!(" under --max-memory {}", human(cap)) };
    Err(crate::error::Error::data(
        what(),
        format!(
            "needs about {} of memory, and {} is available{under} (fewer or smaller inputs need less)",
            human(bytes),
            human(free)
        ),
    ))
}

/// `bytes` as MiB or GiB.
pub fn human(bytes: usize) -> String {
    let mib = bytes as f64 / (1u64 << 20) as f64;
    if mib >= 1024.0 {
        format!("{:.1} GiB", mib / 1024.0)
    } else {
        format!("{mib:.0} MiB")
    }
}

/// Heap bytes in use now.
pub fn in_use() -> usize {
    IN_USE.load(Ordering::Relaxed)
}

#[cfg(feature = "cli")]
mod capped {
    use std::alloc::{GlobalAlloc, Layout};
    use std::sync::atomic::Ordering;

    use mimalloc::MiMalloc;

    use super::{in_use, CAP, IN_USE};

    pub struct Capped;

    // mimalloc's C API (linked in by the `mimalloc` crate, which does not wrap these two).
    extern "C" {
        fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
    }
    /// `mi_option_purge_delay` in mimalloc.h's `mi_option_e` (index 15 in both v2 and v3, the
    /// versions libmimalloc-sys 0.1 bundles; the crate's own constants predate v3).
    const PURGE_DELAY: std::ffi::c_int = 15;

    impl Capped {
        /// Keeps freed pages for reuse instead of returning them to the OS a second later (v3's
        /// default purge delay): a training
        /// step frees and reallocates every activation, and each purged page comes back as a page
        /// fault that zeroes it (38% of a MobileNetV2 step's samples were the kernel's
        /// `clear_page`, 59k faults in 6 steps; 1.2k with this). Peak RSS is the same to within
        /// ~3%. A `MIMALLOC_PURGE_DELAY` set by the user wins.
        pub fn keep_freed_pages() {
            // SAFETY: an option write of the linked mimalloc, valid at any time.
            unsafe {
                if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
                    mi_option_set(PURGE_DELAY, -1);
                }
            }
        }
    }

    impl Capped {
        /// Counts `size` more bytes and runs `allocate`; past the cap, ends the process instead. A
        /// failed allocation (null) gives its bytes back to the count.
        fn counted(&self, size: usize, allocate: impl FnOnce() -> *mut u8) -> *mut u8 {
            let now = IN_USE.fetch_add(size, Ordering::Relaxed) + size;
            if now > CAP.load(Ordering::Relaxed) {
                IN_USE.fetch_sub(size, Ordering::Relaxed);
                over_cap(size);
            }
            let ptr = allocate();
            if ptr.is_null() {
                IN_USE.fetch_sub(size, Ordering::Relaxed);
            }
            ptr
        }
    }

    // SAFETY: every call forwards to mimalloc with the caller's layout; the counter only decides
    // whether to forward.
    unsafe impl GlobalAlloc for Capped {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            self.counted(layout.size(), || unsafe { MiMalloc.alloc(layout) })
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            self.counted(layout.size(), || unsafe { MiMalloc.alloc_zeroed(layout) })
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
            unsafe { MiMalloc.dealloc(ptr, layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let old = layout.size();
            if new_size <= old {
                IN_USE.fetch_sub(old - new_size, Ordering::Relaxed);
                return unsafe { MiMalloc.realloc(ptr, layout, new_size) };
            }
            self.counted(new_size - old, || unsafe { MiMalloc.realloc(ptr, layout, new_size) })
        }
    }

    /// Ends the process: the message is written without allocating (we are inside the allocator).
    fn over_cap(request: usize) -> ! {
        let mut buf = [0u8; 200];
        let mut len = 0;
        let mut put = |s: &[u8]| {
            let n = s.len().min(buf.len() - len);
            buf[len..len + n].copy_from_slice(&s[..n]);
            len += n;
        };
        let mib = |v: usize, digits: &mut [u8; 20]| -> usize {
            let (mut v, mut i) = (v.div_ceil(1 << 20), digits.len());
            loop {
                i -= 1;
                digits[i] = b'0' + (v % 10) as u8;
                v /= 10;
                if v == 0 {
                    return i;
                }
            }
        };
        let (mut a, mut b, mut c) = ([0u8; 20], [0u8; 20], [0u8; 20]);
        let (ia, ib, ic) = (mib(request, &mut a), mib(in_use(), &mut b), mib(CAP.load(Ordering::Relaxed), &mut c));
        put(b"error: out of memory: ");
        put(&a[ia..]);
        put(b" MiB more on top of ");
        put(&b[ib..]);
        put(b" MiB in use would exceed --max-memory ");
        put(&c[ic..]);
        put(b" MiB (a smaller --batch or --size needs less)\n");
        #[cfg(unix)]
        // SAFETY: write(2) and _exit(2) are async-signal-safe and allocation-free.
        unsafe {
            libc::write(2, buf.as_ptr().cast(), len);
            libc::_exit(2)
        }
        #[cfg(not(unix))]
        std::process::abort()
    }
}
