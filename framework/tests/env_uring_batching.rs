//! `POLLRING_URING_MIN_WAIT_US` and `POLLRING_URING_WAIT_BATCH` reach
//! `UringConfig` through `Config::from_env`, 0 turns batching off, and a bad
//! value names the variable. One test: it sets process-wide variables.

use std::time::Duration;

use pollring::Config;

#[test]
fn batching_variables_reach_the_io_uring_config() {
    std::env::set_var("POLLRING_URING_MIN_WAIT_US", "5");
    std::env::set_var("POLLRING_URING_WAIT_BATCH", "4");
    let config = Config::from_env().expect("valid variables");
    assert_eq!(config.uring.min_wait, Some(Duration::from_micros(5)));
    assert_eq!(config.uring.wait_batch, 4);

    std::env::set_var("POLLRING_URING_MIN_WAIT_US", "0");
    assert_eq!(Config::from_env().expect("valid variables").uring.min_wait, None);

    std::env::set_var("POLLRING_URING_MIN_WAIT_US", "soon");
    let err = Config::from_env().unwrap_err().to_string();
    assert!(err.contains("POLLRING_URING_MIN_WAIT_US"), "{err}");
    assert!(err.contains("microseconds"), "{err}");

    std::env::set_var("POLLRING_URING_MIN_WAIT_US", "5");
    std::env::set_var("POLLRING_URING_WAIT_BATCH", "0");
    assert!(Config::from_env().is_err(), "a batch of 0 completions is refused");
    std::env::remove_var("POLLRING_URING_MIN_WAIT_US");
    std::env::remove_var("POLLRING_URING_WAIT_BATCH");
}
