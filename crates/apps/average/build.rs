//! Rebuilds the crate when a migration is added: `sqlx::migrate!` embeds `migrations/` at
//! compile time, and cargo reruns the macro only when a file it already knows changes, so
//! a new migration file alone would leave the binary migrating to the old list (the build
//! script sqlx recommends).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
