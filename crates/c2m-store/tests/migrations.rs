//! A released migration never changes. A store that applied one refuses a build whose copy
//! differs ("migration N was previously applied but has been modified"), so editing one in
//! place would lock every deployed store out of the next release. `migrations/released.txt`
//! keeps each migration's checksum as it was released; a new migration is added to it in
//! the commit that adds the migration (the failure below prints its line).

use std::collections::BTreeSet;

#[test]
fn released_migrations_are_never_changed_and_new_ones_are_recorded() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations/released.txt");
    let text = std::fs::read_to_string(&path).expect("migrations/released.txt");
    let released: BTreeSet<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let built = c2m_store::conformance::migration_lines();
    let built: BTreeSet<&str> = built.iter().map(String::as_str).collect();
    let changed: Vec<_> = released.difference(&built).collect();
    assert!(
        changed.is_empty(),
        "released migrations changed or removed (add a new migration instead): {changed:#?}"
    );
    let new: Vec<_> = built.difference(&released).collect();
    assert!(
        new.is_empty(),
        "migrations not in migrations/released.txt; add these lines with them: {new:#?}"
    );
}
