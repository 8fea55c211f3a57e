//! `POLLRING_NO_URING` disables the io_uring driver with a named reason.
//! In a file of its own: the variable is process-wide.

use std::num::{NonZeroU32, NonZeroUsize};

use pollring_backends::buf::Pool;
use pollring_backends::uring::{probe, Uring, UringConfig, UringError};

#[test]
fn uring_disabled_by_env_names_the_variable() {
    std::env::set_var("POLLRING_NO_URING", "1");
    let config = UringConfig::default();
    let err = probe(&config).unwrap_err();
    assert!(matches!(err, UringError::DisabledByEnv), "{err:?}");
    assert!(err.to_string().contains("POLLRING_NO_URING"), "{err}");

    let pool = Pool::new(NonZeroUsize::new(1024).unwrap(), NonZeroU32::new(16).unwrap()).unwrap();
    let err = Uring::new(pool, &config).unwrap_err();
    assert!(matches!(err, UringError::DisabledByEnv), "{err:?}");

    // "0" and empty mean "not disabled".
    for value in ["0", ""] {
        std::env::set_var("POLLRING_NO_URING", value);
        match probe(&config) {
            Err(UringError::DisabledByEnv) => panic!("{value:?} must not disable io_uring"),
            Err(e) => eprintln!("probe failed for another reason (acceptable here): {e}"),
            Ok(()) => {}
        }
    }
}
