//! stand-in until the http branch lands
pub struct BearerToken(pub Option<String>);
