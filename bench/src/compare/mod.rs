//! The side-by-side comparison of Fulcrum and HAProxy: same origins, equivalent configs, pinned
//! CPUs, rounds alternating A B A B, reported as medians and Fulcrum/HAProxy ratios.
