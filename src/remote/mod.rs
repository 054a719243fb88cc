//! Pure: the sh text of every remote step beside the parser of its reply.

pub mod apply;
pub mod artifact;
pub mod bootstrap;
pub mod guard;
pub mod probe;
pub mod rollback;
