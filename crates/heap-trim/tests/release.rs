//! Its own test binary: the figure read is the whole process's resident
//! anonymous memory, which other tests running beside it would change.

use heap_trim::release_free_heap;

/// RssAnon of this process, in KiB.
fn resident_anon_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("RssAnon:"))
        .expect("an RssAnon line");
    line.split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("a number of kB")
}

#[test]
fn memory_freed_below_a_block_in_use_goes_back_to_the_kernel() {
    // 32 MiB in 4 KiB blocks (heap, not mmap), touched, then all freed but
    // the last: the block still in use at the top keeps the allocator from
    // returning the rest on its own.
    let mut blocks: Vec<Vec<u8>> = (0..8192).map(|i| vec![i as u8 | 1; 4096]).collect();
    let last = blocks.pop().expect("a block");
    drop(blocks);
    let before = resident_anon_kib();

    assert!(release_free_heap(), "malloc_trim released nothing");
    let after = resident_anon_kib();
    assert!(
        before.saturating_sub(after) > 16 * 1024,
        "resident anonymous memory went from {before} KiB only to {after} KiB"
    );
    assert_eq!(last[0], 255, "the block in use keeps its contents");
}
