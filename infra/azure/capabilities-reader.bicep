// The one subscription-level read the control plane needs: the SQL capabilities of a region
// (Capabilities - List By Location), where Resource Manager lists each elastic pool SKU's
// maxDatabaseCount. A custom role with that single action, assigned to the control plane's
// identity on this subscription; deployed by main.bicep as a module at subscription scope (the
// deploying user needs to create role definitions and assignments there: Owner or User Access
// Administrator).
targetScope = 'subscription'

@description('Principal id of the control plane\'s managed identity.')
param principalId string

@description('Display name of the custom role (unique in the tenant).')
param roleName string

resource role 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, roleName)
  properties: {
    roleName: roleName
    description: 'Read the Azure SQL capabilities of a region (elastic pool database limits).'
    type: 'CustomRole'
    permissions: [
      {
        actions: [
          'Microsoft.Sql/locations/capabilities/read'
        ]
        notActions: []
      }
    ]
    assignableScopes: [
      subscription().id
    ]
  }
}

resource assignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(subscription().id, principalId, role.id)
  properties: {
    roleDefinitionId: role.id
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
