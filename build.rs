//! Records when this build was made, for `traffix doctor`'s clock check (the system time must
//! be after it). It runs again only when this file changes, so it costs nothing per build.

fn main() {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    // SOURCE_DATE_EPOCH (reproducible builds) wins when set.
    let time = std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|s| s.parse::<u64>().ok()).unwrap_or(now);
    println!("cargo:rustc-env=TRAFFIX_BUILD_TIME={time}");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
}
