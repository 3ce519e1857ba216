# Seed: /work/shared/seeds/000_8a7939156532ff46.txt ("Monitoring Client Usage" > "Cost Tracking"), verbatim.
# Substituted: http://localhost:2906 -> ${BASE_URL}; your-admin-key -> ${ADMIN_KEY}. Nothing else.

# Get cost breakdown by provider for a client
curl -H "Authorization: Bearer ${ADMIN_KEY}" \
  "${BASE_URL}/admin/v1/stats?group_by=provider&client_key=prod-app-001"
