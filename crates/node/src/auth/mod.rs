//! Authentication (SCRAM) and authorization (users, built-in roles).

pub mod roles;
pub mod scram;
pub mod users;

pub use roles::{Action, Resource, RoleRef, role_exists, roles_grant};
pub use scram::Mechanism;
pub use users::{User, UserName, UserStore};
