//! Stage 1 of the pipeline: CPython's command-line model (argv + environment
//! → [`LaunchSpec`]). Filled in by the argv work (issue 2).
