# Seed: /work/shared/seeds/000_8a7939156532ff46.txt ("Client Management" > "Deleting Clients"), verbatim.
# Substituted: http://localhost:2906 -> ${BASE_URL}; your-admin-key -> ${ADMIN_KEY}. Nothing else.

# Remove a client
curl -X DELETE ${BASE_URL}/admin/v1/clients/prod-app-001 \
  -H "Authorization: Bearer ${ADMIN_KEY}"
