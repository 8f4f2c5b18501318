//! Rebuilds this crate when a migration is added, changed or removed. `sqlx::migrate!` embeds
//! the `migrations` folder when the crate compiles, and cargo does not watch that folder by
//! itself: without this, a new migration is missing from a binary built before it, with no
//! error until the schema is found wanting.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
