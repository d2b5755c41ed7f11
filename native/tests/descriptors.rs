//! The count of descriptors in use that reclaiming is judged by. Alone in
//! its test binary: no other test opens descriptors while it counts.

use std::fs::{self, File};

use fin_close_nif::sys;

/// Counts every open descriptor, as a read of the process's table does.
#[test]
fn descriptors_in_use_counts_every_open_one() {
    let listed = || fs::read_dir("/proc/self/fd").unwrap().count() as u64 - 1;
    let before = sys::descriptors_in_use().unwrap();
    assert_eq!(before, listed());
    let files: Vec<File> = (0..500).map(|_| File::open("/dev/null").unwrap()).collect();
    assert_eq!(sys::descriptors_in_use().unwrap(), before + 500);
    assert_eq!(sys::descriptors_in_use().unwrap(), listed());
    drop(files);
    assert_eq!(sys::descriptors_in_use().unwrap(), before);
}
