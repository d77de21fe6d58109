// tenant-control-plane on Azure: the control plane in Azure Container Apps under a
// user-assigned managed identity, tenant databases in an Azure SQL Database elastic pool, tenant
// connection strings in Key Vault, the audit archive in an immutable Blob container.
// Walkthrough: infra/azure/README.md. Deploy into a resource group:
//   az deployment group create -g rg-tcp -f infra/azure/main.bicep -p @infra/azure/main.parameters.json
//
// Least privilege, resource by resource:
// - Key Vault (RBAC mode): "Key Vault Secrets Officer" on this vault only (set, get, list,
//   delete, recover, purge secrets; no keys, no certificates, no access to other vaults).
// - Storage: "Storage Blob Data Contributor" on the archive container only; the container's
//   time-based retention policy keeps what is written there from being changed or deleted.
// - Azure SQL: the identity is the logical server's Microsoft Entra admin. Narrower does not
//   work: the control plane creates and drops databases (dbmanager) *and* owns every tenant
//   database it creates (their contained users, roles, DENYs), and only the server admin is dbo
//   of every database without a login in each. Only Entra authentication is enabled (no SQL
//   logins, no passwords for the control plane itself).
// - Resource Manager, to read the pool's database limit (the server's capacity): "Reader" on
//   the pool only, and a custom role holding the one action
//   Microsoft.Sql/locations/capabilities/read on the subscription (capabilities-reader.bicep;
//   the region's SKU limits are a subscription-level read, and no built-in role is narrower
//   than Reader on the whole subscription).

@description('Prefix of every resource name (lowercase letters and digits, 3-11 characters).')
@minLength(3)
@maxLength(11)
param prefix string = 'tcp'

@description('Region of every resource.')
param location string = resourceGroup().location

@description('An Azure Container Registry in this resource group that holds the image (the identity gets AcrPull on it).')
param registryName string

@description('The control plane image in that registry, built from infra/Dockerfile, e.g. tenant-control-plane:1.0.')
param image string

@description('OIDC issuer of the tokens callers present (Microsoft Entra ID: https://login.microsoftonline.com/<tenant>/v2.0).')
param oidcIssuer string

@description('Accepted audience of those tokens (the API app registration\'s client id or App ID URI).')
param oidcAudience string

@description('Elastic pool vCores (General Purpose, Gen5). The control plane reads how many databases the pool holds from Resource Manager and takes that, less the template, as the server\'s capacity.')
@allowed([2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 24, 32, 40, 80])
param poolVcores int = 2

@description('Days every audit archive stays immutable after it is written (the deployment\'s archive retention).')
@minValue(1)
@maxValue(146000)
param archiveRetentionDays int = 2555

var suffix = uniqueString(resourceGroup().id)
var names = {
  identity: '${prefix}-id-${suffix}'
  vault: take('${prefix}kv${suffix}', 24)
  sql: '${prefix}-sql-${suffix}'
  pool: '${prefix}-tenants'
  catalog: 'tenant_catalog'
  archive: take('${prefix}arch${suffix}', 24)
  data: take('${prefix}data${suffix}', 24)
  logs: '${prefix}-logs-${suffix}'
  environment: '${prefix}-env-${suffix}'
  app: '${prefix}-api'
}
// Built-in role definition ids.
var keyVaultSecretsOfficer = 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'
var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
var acrPull = '7f951dda-4ed3-4680-a7ca-43fe172d538d'
var reader = 'acdd72a7-3385-48ef-bd42-f606fba81ae7'

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: names.identity
  location: location
}

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' existing = {
  name: registryName
}

resource registryRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(registry.id, identity.id, acrPull)
  scope: registry
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', acrPull)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Tenant connection strings and the fleet's admin URLs.
resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: names.vault
  location: location
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    publicNetworkAccess: 'Enabled'
  }
}

resource vaultRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, identity.id, keyVaultSecretsOfficer)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsOfficer)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// The logical server, Entra-only, with the identity as its Entra admin.
resource sql 'Microsoft.Sql/servers@2023-08-01-preview' = {
  name: names.sql
  location: location
  properties: {
    minimalTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
    administrators: {
      administratorType: 'ActiveDirectory'
      azureADOnlyAuthentication: true
      principalType: 'Application'
      login: identity.name
      // A service principal's (and a managed identity's) SID in SQL is its application
      // (client) id.
      sid: identity.properties.clientId
      tenantId: tenant().tenantId
    }
  }
}

// Azure services (Container Apps' outbound addresses among them) may connect; add a private
// endpoint and drop this rule for production networks.
resource sqlAzureServices 'Microsoft.Sql/servers/firewallRules@2023-08-01-preview' = {
  parent: sql
  name: 'AllowAllWindowsAzureIps'
  properties: {
    startIpAddress: '0.0.0.0'
    endIpAddress: '0.0.0.0'
  }
}

resource pool 'Microsoft.Sql/servers/elasticPools@2023-08-01-preview' = {
  parent: sql
  name: names.pool
  location: location
  sku: {
    name: 'GP_Gen5'
    tier: 'GeneralPurpose'
    family: 'Gen5'
    capacity: poolVcores
  }
  properties: {
    perDatabaseSettings: {
      minCapacity: 0
      maxCapacity: 2
    }
  }
}

// The pool's database limit is read by the control plane (the server's capacity).
resource poolRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(pool.id, identity.id, reader)
  scope: pool
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', reader)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

module capabilitiesRole 'capabilities-reader.bicep' = {
  name: '${prefix}-capabilities-reader-${suffix}'
  scope: subscription()
  params: {
    principalId: identity.properties.principalId
    roleName: '${prefix} SQL capabilities reader ${suffix}'
  }
}

// The catalog is the control plane's own: a small serverless database beside the pool (never
// paused: the control plane is always connected), so it takes no tenant's place in the pool and
// no share of its resources.
resource catalog 'Microsoft.Sql/servers/databases@2023-08-01-preview' = {
  parent: sql
  name: names.catalog
  location: location
  sku: {
    name: 'GP_S_Gen5'
    tier: 'GeneralPurpose'
    family: 'Gen5'
    capacity: 1
  }
  properties: {
    minCapacity: json('0.5')
    autoPauseDelay: -1
  }
}

// The audit archive: one container under a time-based retention policy.
resource archive 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: names.archive
  location: location
  kind: 'StorageV2'
  sku: {
    name: 'Standard_GZRS'
  }
  properties: {
    minimumTlsVersion: 'TLS1_2'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    supportsHttpsTrafficOnly: true
  }
}

resource archiveBlobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: archive
  name: 'default'
}

resource archiveContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: archiveBlobs
  name: 'audit-archive'
  properties: {
    publicAccess: 'None'
  }
}

// Unlocked as deployed: check the period, then lock it (README: "az storage container
// immutability-policy lock"); a locked policy can never be shortened or removed.
resource archivePolicy 'Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies@2023-05-01' = {
  parent: archiveContainer
  name: 'default'
  properties: {
    immutabilityPeriodSinceCreationInDays: archiveRetentionDays
    allowProtectedAppendWrites: false
  }
}

resource archiveRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(archiveContainer.id, identity.id, storageBlobDataContributor)
  scope: archiveContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// The control plane's data directory (its document-signing key must survive restarts): an
// Azure Files share. Container Apps mounts SMB shares with the account key only, so this is
// an account of its own, apart from the archive (which allows no shared key).
resource data 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: names.data
  location: location
  kind: 'StorageV2'
  sku: {
    name: 'Standard_ZRS'
  }
  properties: {
    minimumTlsVersion: 'TLS1_2'
    allowBlobPublicAccess: false
    supportsHttpsTrafficOnly: true
  }
}

resource dataFiles 'Microsoft.Storage/storageAccounts/fileServices@2023-05-01' = {
  parent: data
  name: 'default'
}

resource dataShare 'Microsoft.Storage/storageAccounts/fileServices/shares@2023-05-01' = {
  parent: dataFiles
  name: 'tcp-data'
  properties: {
    shareQuota: 1
  }
}

resource logs 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: names.logs
  location: location
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 30
  }
}

resource environment 'Microsoft.App/managedEnvironments@2024-03-01' = {
  name: names.environment
  location: location
  properties: {
    appLogsConfiguration: {
      destination: 'log-analytics'
      logAnalyticsConfiguration: {
        customerId: logs.properties.customerId
        sharedKey: logs.listKeys().primarySharedKey
      }
    }
  }
}

resource environmentData 'Microsoft.App/managedEnvironments/storages@2024-03-01' = {
  parent: environment
  name: 'tcpdata'
  properties: {
    azureFile: {
      accountName: data.name
      accountKey: data.listKeys().keys[0].value
      shareName: dataShare.name
      accessMode: 'ReadWrite'
    }
  }
}

var sqlHost = sql.properties.fullyQualifiedDomainName
var sqlAuth = 'auth=managed_identity&client_id=${identity.properties.clientId}'

resource app 'Microsoft.App/containerApps@2024-03-01' = {
  name: names.app
  location: location
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identity.id}': {}
    }
  }
  properties: {
    managedEnvironmentId: environment.id
    configuration: {
      ingress: {
        external: true
        targetPort: 8080
        transport: 'http'
      }
      registries: [
        {
          server: registry.properties.loginServer
          identity: identity.id
        }
      ]
    }
    template: {
      containers: [
        {
          name: 'control-plane'
          image: '${registry.properties.loginServer}/${image}'
          resources: {
            cpu: json('1.0')
            memory: '2Gi'
          }
          env: [
            { name: 'TENANT_CP_LISTEN', value: '0.0.0.0:8080' }
            { name: 'TENANT_CP_DATA_DIR', value: '/data' }
            { name: 'TENANT_CP_LOG_FORMAT', value: 'json' }
            { name: 'TENANT_CP_ENGINE', value: 'azure_sql' }
            { name: 'TENANT_CP_SQLSERVER_ADMIN_URL', value: 'sqlserver://${sqlHost}:1433?${sqlAuth}' }
            // By its resource id: the server's capacity is read from the pool.
            { name: 'TENANT_CP_AZURE_SQL_ELASTIC_POOL', value: pool.id }
            { name: 'TENANT_CP_CATALOG_URL', value: 'sqlserver://${sqlHost}:1433/${catalog.name}?${sqlAuth}' }
            { name: 'TENANT_CP_SERVER_NAME', value: 'azure-sql-1' }
            { name: 'TENANT_CP_SECRET_STORE', value: 'azure_key_vault' }
            { name: 'TENANT_CP_KEY_VAULT_URL', value: vault.properties.vaultUri }
            { name: 'TENANT_CP_AZURE_CREDENTIAL', value: 'managed_identity' }
            { name: 'TENANT_CP_AZURE_CLIENT_ID', value: identity.properties.clientId }
            { name: 'TENANT_CP_ARCHIVE_STORE', value: 'azure_blob' }
            { name: 'TENANT_CP_ARCHIVE_CONTAINER_URL', value: '${archive.properties.primaryEndpoints.blob}${archiveContainer.name}' }
            { name: 'TENANT_CP_AUTH_MODE', value: 'oidc' }
            { name: 'TENANT_CP_OIDC_ISSUER', value: oidcIssuer }
            { name: 'TENANT_CP_OIDC_AUDIENCE', value: oidcAudience }
          ]
          volumeMounts: [
            {
              volumeName: 'data'
              mountPath: '/data'
            }
          ]
        }
      ]
      volumes: [
        {
          name: 'data'
          storageType: 'AzureFile'
          storageName: environmentData.name
        }
      ]
      scale: {
        minReplicas: 1
        maxReplicas: 2
      }
    }
  }
  dependsOn: [
    registryRole
    vaultRole
    poolRole
    capabilitiesRole
    archiveRole
    archivePolicy
    catalog
    sqlAzureServices
  ]
}

output apiUrl string = 'https://${app.properties.configuration.ingress.fqdn}'
output sqlServer string = sqlHost
output elasticPool string = pool.name
output keyVaultUrl string = vault.properties.vaultUri
output archiveContainerUrl string = '${archive.properties.primaryEndpoints.blob}${archiveContainer.name}'
output identityClientId string = identity.properties.clientId
