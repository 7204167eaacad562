//! What the API and the live streams show of applications.
