//! Running one manifest as many tasks on a cluster: Slurm job arrays
//! (`forja slurm`). The rank slices, phases, barriers and completion
//! markers are the runner's own; this module only writes and submits jobs.

pub mod slurm;

pub use slurm::SlurmConfig;
