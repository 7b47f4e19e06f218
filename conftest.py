pytest_plugins = ["guestguard.testing"]
