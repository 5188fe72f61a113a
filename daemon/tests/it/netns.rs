//! When the tests run as root: agents in their own network namespaces, and
//! one cut off by taking its link down.
