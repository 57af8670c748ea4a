//! Unit tests of the StatefulSet plan.
