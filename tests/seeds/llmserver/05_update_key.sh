# Seed: /work/shared/seeds/002_1bedb6a91cd50d35.txt ("2. API Key Management" > PATCH /v1/admin/keys/{key}:
# "Update an existing key (for example, enable/disable or change role)"). The seed gives only the method
# and path; this is that request written like the seed's other calls. ${KEY}: the key (its id, its value
# or its display prefix); ${BODY}: the change, e.g. {"active": false}, {"active": true}, {"role": "admin"}.

curl -X PATCH ${PORTAL_URL}/v1/admin/keys/${KEY} \
  -H "X-API-Key: ${ADMIN_KEY}" \
  -H "Content-Type: application/json" \
  -d "${BODY}"
