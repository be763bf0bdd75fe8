//! Keeping the daemon small: hand freed heap memory back to the kernel.
//!
//! Loading or pulling an image allocates large buffers (decompression,
//! hashing, tar) on a blocking thread. glibc keeps freed memory in per-thread
//! arenas, so without help the daemon's resident size stays at its peak for
//! good. The engine calls [`release`] after such work, and the daemon calls
//! [`limit_arenas`] at start so that blocking threads share one arena.

/// Returns free heap memory to the kernel (glibc's `malloc_trim`).
pub fn release() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Makes every thread share the main heap arena (glibc `M_ARENA_MAX`).
pub fn limit_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt changes an allocator tunable; called before threads start.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}
