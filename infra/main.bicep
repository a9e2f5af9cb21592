// Everything the latest-run widget's Function App needs, and nothing else: a storage account,
// a Linux plan (Flex Consumption by default, Linux Consumption as the fallback), the Function
// App running the Rust custom handler, and optionally Application Insights.
//
// azuredeploy.json beside this file is the ARM JSON of this template (written by hand to match
// it: see docs/deploy.md, "Deploy to Azure"); tests/api/infra.rs keeps the two in agreement and holds the
// app settings to exactly the ones the app reads (src/config.rs, setting_names()).

@description('Name of the Function App; also the host name: https://<appName>.azurewebsites.net.')
@minLength(2)
@maxLength(60)
param appName string

@description('Azure region for every resource. Flex Consumption is not in every region: az functionapp list-flexconsumption-locations.')
param location string = resourceGroup().location

@description('Hosting plan: FlexConsumption (Linux, the current serverless plan) or Consumption (Linux Consumption, retired on 2028-09-30).')
@allowed([
  'FlexConsumption'
  'Consumption'
])
param plan string = 'FlexConsumption'

@description('WIDGET_ALLOWED_ORIGINS: * or comma-separated origins such as https://blog.example.org.')
param allowedOrigins string = '*'

@description('STRAVA_WEBHOOK_VERIFY_TOKEN: the Strava webhook\'s shared secret; empty until the webhook is set up.')
@secure()
param webhookVerifyToken string = ''

@description('Create Application Insights (with a Log Analytics workspace) and send the host\'s logs there.')
param enableApplicationInsights bool = true

var isFlex = plan == 'FlexConsumption'
var storageAccountName = 'st${uniqueString(resourceGroup().id, appName)}'
var deploymentContainerName = 'app-package'
var planSkus = {
  FlexConsumption: { name: 'FC1', tier: 'FlexConsumption' }
  Consumption: { name: 'Y1', tier: 'Dynamic' }
}

// The settings the app reads (DESIGN §3), with safe defaults; AzureWebJobsStorage is added on
// the site, as it needs the storage account's key.
var appSettings = [
  { name: 'STRAVA_TABLE_CONNECTION', value: '' }
  { name: 'STRAVA_TABLE_NAME', value: 'strava' }
  { name: 'STRAVA_BASE_URL', value: 'https://www.strava.com' }
  { name: 'WIDGET_SPORT_TYPES', value: 'Run,TrailRun,VirtualRun' }
  { name: 'WIDGET_CACHE_SECONDS', value: '600' }
  { name: 'WIDGET_ALLOWED_ORIGINS', value: allowedOrigins }
  { name: 'WIDGET_ROUTE_SHAPE', value: 'false' }
  { name: 'WIDGET_ROUTE_PRIVACY_METERS', value: '500' }
  { name: 'STRAVA_WEBHOOK_VERIFY_TOKEN', value: webhookVerifyToken }
  { name: 'RUST_LOG', value: 'info' }
  { name: 'LOG_FORMAT', value: 'json' }
]

// Linux Consumption takes the worker runtime and the Functions version as app settings; Flex
// Consumption refuses them and takes the runtime from functionAppConfig instead (always ~4).
var consumptionSettings = [
  { name: 'FUNCTIONS_WORKER_RUNTIME', value: 'custom' }
  { name: 'FUNCTIONS_EXTENSION_VERSION', value: '~4' }
]

var flexConfig = {
  deployment: {
    storage: {
      type: 'blobContainer'
      value: 'https://${storageAccountName}.blob.${environment().suffixes.storage}/${deploymentContainerName}'
      authentication: {
        type: 'StorageAccountConnectionString'
        storageAccountConnectionStringName: 'AzureWebJobsStorage'
      }
    }
  }
  scaleAndConcurrency: {
    maximumInstanceCount: 40
    instanceMemoryMB: 2048
  }
  runtime: { name: 'custom', version: '1.0' }
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageAccountName
  location: location
  kind: 'StorageV2'
  sku: { name: 'Standard_LRS' }
  properties: {
    minimumTlsVersion: 'TLS1_2'
    allowBlobPublicAccess: false
    supportsHttpsTrafficOnly: true
    allowSharedKeyAccess: true
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = if (isFlex) {
  name: '${storage.name}/default/${deploymentContainerName}'
  properties: { publicAccess: 'None' }
}

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = if (enableApplicationInsights) {
  name: 'log-${appName}'
  location: location
  properties: {
    sku: { name: 'PerGB2018' }
    retentionInDays: 30
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = if (enableApplicationInsights) {
  name: 'appi-${appName}'
  location: location
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
  }
}

resource hostingPlan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: 'plan-${appName}'
  location: location
  kind: 'functionapp'
  sku: planSkus[plan]
  properties: { reserved: true }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: appName
  location: location
  kind: 'functionapp,linux'
  dependsOn: [
    deploymentContainer
  ]
  properties: {
    serverFarmId: hostingPlan.id
    reserved: true
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      appSettings: concat([
        { name: 'AzureWebJobsStorage', value: 'DefaultEndpointsProtocol=https;AccountName=${storage.name};AccountKey=${storage.listKeys().keys[0].value};EndpointSuffix=${environment().suffixes.storage}' }
      ], appSettings, isFlex ? [] : consumptionSettings, enableApplicationInsights ? [
        { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', value: appInsights.properties.ConnectionString }
      ] : [])
    }
    functionAppConfig: isFlex ? flexConfig : null
  }
}

@description('The Function App\'s name (for func azure functionapp publish).')
output functionAppName string = functionApp.name

@description('The widget\'s endpoint.')
output latestRunUrl string = 'https://${functionApp.properties.defaultHostName}/api/GetLatestRun'

@description('The storage account holding the widget\'s table (for handler setup: az storage account show-connection-string).')
output storageAccountName string = storage.name
