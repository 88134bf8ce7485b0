//! Parsing and checking a derive's input: everything before code generation.

pub(crate) mod ast;
pub(crate) mod attr;
pub(crate) mod case;
pub(crate) mod check;
pub(crate) mod ctxt;
pub(crate) mod ty;

pub(crate) use ctxt::Ctxt;
