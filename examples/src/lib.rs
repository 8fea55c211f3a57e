//! Protocol modules shared by the example servers.
