"""The admin token the tests' predictors are started with (gallery writes need it)."""

TEST_ADMIN_TOKEN = "facesim-test-admin-token"
AUTH = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}
