# Seed: /work/shared/seeds/000_8a7939156532ff46.txt ("Monitoring Client Usage" > "Client Metrics API"), verbatim.
# Substituted: http://localhost:2906 -> ${BASE_URL}; your-admin-key -> ${ADMIN_KEY}. Nothing else.

# Get client metrics for last 24 hours
curl -H "Authorization: Bearer ${ADMIN_KEY}" \
  "${BASE_URL}/admin/v1/metrics/clients/prod-app-001?start=$(date -d '24 hours ago' +%s)&end=$(date +%s)"
