# Seed: /work/shared/seeds/000_8a7939156532ff46.txt ("Troubleshooting" > "Debug Commands"), verbatim.
# Substituted: http://localhost:2906 -> ${BASE_URL}; admin-key -> ${ADMIN_KEY}; client-key -> ${CLIENT_KEY}.
# Nothing else. (The three JSON answers follow each other on stdout; the test reads them one by one.)

# Check client exists
curl -H "Authorization: Bearer ${ADMIN_KEY}" \
  ${BASE_URL}/admin/v1/clients/debug-client

# Test client authentication
curl -H "Authorization: Bearer ${CLIENT_KEY}" \
  ${BASE_URL}/v1/models

# Check client metrics
curl -H "Authorization: Bearer ${ADMIN_KEY}" \
  "${BASE_URL}/admin/v1/metrics/clients/debug-client?start=$(date +%s)"
