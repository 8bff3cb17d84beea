-- Sessions are now stored as the SHA-256 of their token. Rows written before hold the
-- token itself, which the new lookup never matches: drop them (their users log in again).
DELETE FROM minitwit_session;
