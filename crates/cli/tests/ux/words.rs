//! How store errors and logs read: each thing said once, the reason given, no colour in a pipe.

use super::seen;
use crate::common::World;

#[test]
fn a_file_that_is_not_a_database_is_said_once() {
    let w = World::sqlite();
    std::fs::write(w.path("notes.txt"), vec![b'x'; 8192]).expect("write");
    let output = w
        .cmd()
        .args(["--db", "notes.txt", "runs"])
        .output()
        .expect("run");
    assert_eq!(
        seen(&output),
        (
            Some(3),
            "stint: STORE_INCOMPATIBLE: notes.txt is not a SQLite database\n".to_owned(),
            String::new()
        )
    );
}
