//! The model-cache demo: a hackathon-judging API (users, events, projects, votes, referrals)
//! reading through the cache from an SQL database, with `cache-sql` as its origin, or from an
//! Airtable base, with `cache-airtable` (`SOURCE=airtable`).
//!
//! The binary is `demo-app`; the library exists so that the end-to-end tests drive the same
//! code on a real socket.

pub mod airtable;
pub mod api;
pub mod app;
pub mod commands;
pub mod config;
pub mod database;
pub mod models;
pub mod origin;
pub mod seed;
pub mod writes;
