//! Engine rules, one file per part of the engine they exercise, on the seed scenario of
//! [`fixtures`].

mod budget;
mod clients;
mod fixtures;
mod mesh_config;
mod modes;
mod network_policies;
mod scope;
mod traffic;
mod verdict;
