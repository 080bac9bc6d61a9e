// Lets controlplane list this crate as a build-dependency (aya-template layout).
#![no_std]
