//! nodelifecycle (todo).
