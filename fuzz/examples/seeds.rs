//! Writes the generated seeds into `fuzz/corpus/<target>/seed-<n>` (run from the repository
//! root: `cargo run -p mesh-fuzz --example seeds`), for cargo-fuzz to start from.

use std::path::Path;

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut counts = std::collections::BTreeMap::new();
    for (target, seed) in mesh_fuzz::seeds::all() {
        let n = counts.entry(target).or_insert(0);
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(format!("seed-{n}")), seed)?;
        *n += 1;
    }
    for (target, n) in counts {
        println!("{target}: {n} seeds");
    }
    Ok(())
}
