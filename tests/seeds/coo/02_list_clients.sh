# Seed: /work/shared/seeds/000_8a7939156532ff46.txt ("Client Management" > "Listing Clients"), verbatim.
# Substituted: http://localhost:2906 -> ${BASE_URL}; your-admin-key -> ${ADMIN_KEY}. Nothing else.

# List all clients
curl -H "Authorization: Bearer ${ADMIN_KEY}" \
  ${BASE_URL}/admin/v1/clients/list
