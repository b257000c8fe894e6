"""Test settings: the product's settings with fixed test secrets; DATABASE_URL picks SQLite or PostgreSQL."""

import os

os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production")
# A fixed Fernet key so that tests can encrypt and decrypt; never used outside the tests.
os.environ.setdefault("SYNCADMIN_ENCRYPTION_KEY", "l6hVwQ1l0hZNMRqzCUjprJ6Or7i1yOeFPKy_Fn9FwcY=")

# The tests' client and browser speak plain HTTP on loopback.
os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
os.environ.setdefault("SECURE_COOKIES", "0")

from syncadmin.settings import *  # noqa: F403
from tracking.jobqueues import rq_queues

# The suite tests the development tools too (the simulator, runall, load_demo, generate_load).
if "syncadmin.devtools" not in INSTALLED_APPS:  # noqa: F405
    INSTALLED_APPS.append("syncadmin.devtools")  # noqa: F405
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405  (WhiteNoise warns when it is missing)
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.MD5PasswordHasher"
]  # speed only; production keeps the default
RQ_QUEUES = rq_queues(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15"), 60)

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # A file, not memory, so that worker processes started by the tests share the test database.
    (BASE_DIR / "var").mkdir(exist_ok=True)  # noqa: F405
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / "var" / f"test-{os.getpid()}.sqlite3")}  # noqa: F405
