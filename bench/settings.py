"""Settings for benchmark processes: the product's settings as deployed (DEBUG off), with fixed bench secrets.

DEBUG stays off so that Django does not keep every query in memory (it would distort timings and RSS);
the benchmarks count queries with CaptureQueriesContext where they need to.
"""

import os

os.environ.setdefault("SECRET_KEY", "bench-secret-key-not-for-production")
# A fixed Fernet key: the benchmark profiles' secrets are encrypted with it; never used outside benchmarks.
os.environ.setdefault("SYNCADMIN_ENCRYPTION_KEY", "2yQm0b8d3h0Y3mY1F8w7eS1mQkq5Qw2cB8u0n8s5W9E=")
os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
os.environ.setdefault("SECURE_COOKIES", "0")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/14")
os.environ.setdefault("LOG_LEVEL", "WARNING")

from syncadmin.settings import *  # noqa: F403

DEBUG = False
# The benchmarks fill databases with generate_load and serve mail with the simulator (dev tools).
if "syncadmin.devtools" not in INSTALLED_APPS:  # noqa: F405
    INSTALLED_APPS.append("syncadmin.devtools")  # noqa: F405
ALLOWED_HOSTS = [*ALLOWED_HOSTS, "testserver"]  # noqa: F405  (Django's test Client)
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # logging in is not what is measured
