//! The process's resident memory, from `/proc/self/statm` (Linux; None elsewhere).

/// Resident set size in bytes.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

fn page_size() -> u64 {
    // Every Linux target this package ships for uses 4 KiB pages.
    4096
}

#[cfg(test)]
mod tests {
    #[test]
    fn resident_memory_is_read_on_linux() {
        let rss = super::resident_bytes().expect("statm");
        assert!(rss > 1 << 20, "a test process holds more than 1 MiB: {rss}");
    }
}
