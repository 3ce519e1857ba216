# Seed: /work/shared/seeds/003_4a16fe1a8956e745.txt ("Backup & Recovery" > "Configuration Backup"), verbatim
# up to the backup itself. Substituted: http://localhost:2906 -> ${BASE_URL}. ${ADMIN_KEY} is the seed's own.
# Left out: the seed's last three lines ("# Encrypt and store", `gpg -c config-${DATE}.yaml` and
# `aws s3 cp config-${DATE}.yaml.gpg s3://backups/coo-llm/`): gpg -c asks for a passphrase on a
# terminal and there is no S3 here; neither touches the portal.

# Daily config backup
#!/bin/bash
DATE=$(date +%Y%m%d)
curl -H "Authorization: Bearer ${ADMIN_KEY}" \
  ${BASE_URL}/admin/v1/config > config-${DATE}.yaml
