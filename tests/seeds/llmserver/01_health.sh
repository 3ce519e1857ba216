# Seed: /work/shared/seeds/002_1bedb6a91cd50d35.txt ("Typical Operator Workflow" step 3, "Verify health"),
# verbatim. Substituted: http://localhost:8000 -> ${PORTAL_URL}. Nothing else.
# (The two JSON answers follow each other on stdout; the test reads them one by one.)

curl ${PORTAL_URL}/healthz
curl ${PORTAL_URL}/readyz
