//! `stint output` never passes an old output off as current.

use super::{seen, world_with_a_run};

#[test]
fn output_of_a_node_whose_rerun_failed_is_not_passed_off_as_current() {
    let w = world_with_a_run();
    let rerun = w.run("r", "n", &["--force"], "exit 3");
    assert_eq!(rerun.status.code(), Some(1));
    let output = w.stint(&["output", "r", "n"]);
    assert_eq!(
        seen(&output),
        (
            Some(1),
            "stint: NO_OUTPUT: r/n#0 has no current output: its latest attempt (2) failed \
             (TASK_FAILED); the output of attempt 1 is kept (--last-finished prints it)\n"
                .to_owned(),
            String::new()
        )
    );
    let output = w.stint(&["output", "r", "n", "--last-finished"]);
    assert_eq!(
        seen(&output),
        (
            Some(0),
            "stint: r/n#0: printing the output of attempt 1; its latest attempt (2) failed \
             (TASK_FAILED)\n"
                .to_owned(),
            "1\n".to_owned()
        )
    );
    let never = w.run("r", "m", &[], "exit 3");
    assert_eq!(never.status.code(), Some(1));
    let output = w.stint(&["output", "r", "m", "--last-finished"]);
    assert_eq!(
        seen(&output),
        (
            Some(1),
            "stint: NO_OUTPUT: r/m#0 has no output: its latest attempt (1) failed (TASK_FAILED)\n"
                .to_owned(),
            String::new()
        )
    );
}
