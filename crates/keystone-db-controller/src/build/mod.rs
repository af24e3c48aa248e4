//! Builders, pure: the KeystoneAPI, the published config and the step's inputs → Jobs and the CronJob.

pub mod jobs;
