//! Gives the heap memory a long-running process has freed back to the
//! kernel.
//!
//! # Background
//!
//! OxOS's own long-running processes (PID 1, a shim per system container,
//! `ros netconf`, `ros console-init`) do most of their allocating at their
//! start: reading the configuration, building an OCI spec, planning the
//! network. Then they wait, for hours, holding little. glibc's allocator
//! keeps what they freed: it returns memory to the kernel only from the top
//! of the heap, and only beyond a threshold (128 KiB by default), so a
//! freed block below one still in use stays resident. Each such process
//! then holds some hundreds of KiB that nobody uses, which on a small
//! machine is a visible part of the system's memory.
//!
//! # Design
//!
//! [`release_free_heap`] is called once, at the point where a process goes
//! from its start to its waiting. It calls glibc's `malloc_trim(0)`, which
//! walks every arena and hands each whole free page back to the kernel
//! (`madvise(MADV_DONTNEED)`), wherever it is in the heap. The call takes
//! microseconds for heaps of this size. Nothing is written by hand beyond
//! that call: no crate wraps it, and the allocator is the C library's.
//!
//! # Limitations
//!
//! - Only with glibc (OxOS's target): with another C library the call does
//!   nothing and says so by returning `false`.
//! - What a process allocates later stays its own until it frees it again.

/// Returns the whole free pages of the heap to the kernel; `true` if some
/// memory was released.
pub fn release_free_heap() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only reorganises the allocator's own free
        // lists under its own locks; it touches no memory in use.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
