//! The `sluice` binary.
fn main() {
    println!("sluice: gateway under construction; see README.md");
}
