"""The Exchange simulator: EWS SOAP and Microsoft Graph over HTTPS on loopback (tests, benchmarks, demo)."""
