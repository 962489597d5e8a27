//! Authentication (SCRAM) and authorization (users, built-in roles, the privilege check).

pub mod roles;
pub mod scram;
pub mod users;

pub use roles::{Action, Pattern, Resource, RoleRef, has_any_privilege, is_authorized, role_exists};
pub use scram::Mechanism;
pub use users::{User, UserName, UserStore};
