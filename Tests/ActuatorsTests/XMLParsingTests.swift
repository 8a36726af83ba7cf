import Foundation
import Testing

@testable import Actuators

/// Response bodies shaped like the samples in the EC2 and Route 53 API references.
struct XMLParsingTests {
    static let describeRouteTablesPage1 = """
        <?xml version="1.0" encoding="UTF-8"?>
        <DescribeRouteTablesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
           <requestId>6f570b0b-9c18-4b07-bdec-73740dcf861a</requestId>
           <routeTableSet>
              <item>
                 <routeTableId>rtb-1122334455667788a</routeTableId>
                 <vpcId>vpc-0a1b2c3d4e5f60718</vpcId>
                 <ownerId>123456789012</ownerId>
                 <routeSet>
                    <item>
                       <destinationCidrBlock>10.0.0.0/16</destinationCidrBlock>
                       <gatewayId>local</gatewayId>
                       <state>active</state>
                       <origin>CreateRouteTable</origin>
                    </item>
                    <item>
                       <destinationCidrBlock>172.31.0.0/16</destinationCidrBlock>
                       <instanceId>i-0123456789abcdef0</instanceId>
                       <instanceOwnerId>123456789012</instanceOwnerId>
                       <networkInterfaceId>eni-0aaaabbbbccccdddd</networkInterfaceId>
                       <state>active</state>
                       <origin>CreateRoute</origin>
                    </item>
                    <item>
                       <destinationIpv6CidrBlock>2001:db8:1234:1a00::/56</destinationIpv6CidrBlock>
                       <networkInterfaceId>eni-0eeeeffff00001111</networkInterfaceId>
                       <state>blackhole</state>
                       <origin>CreateRoute</origin>
                    </item>
                 </routeSet>
                 <associationSet>
                    <item>
                       <routeTableAssociationId>rtbassoc-0fedcba9876543210</routeTableAssociationId>
                       <routeTableId>rtb-1122334455667788a</routeTableId>
                       <subnetId>subnet-0123456789abcdef1</subnetId>
                       <main>false</main>
                       <associationState><state>associated</state></associationState>
                    </item>
                 </associationSet>
                 <propagatingVgwSet/>
                 <tagSet>
                    <item><key>Name</key><value>private-a</value></item>
                    <item><key>switchman:managed</key><value>true</value></item>
                 </tagSet>
              </item>
           </routeTableSet>
           <nextToken>eyJ2IjoiMiIsImMiOiJ0b2tlbiJ9</nextToken>
        </DescribeRouteTablesResponse>
        """

    static let describeRouteTablesPage2 = """
        <DescribeRouteTablesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
           <requestId>7a62c49f-347e-4fc4-9331-6e8eEXAMPLE</requestId>
           <routeTableSet>
              <item>
                 <routeTableId>rtb-99887766554433221</routeTableId>
                 <vpcId>vpc-0a1b2c3d4e5f60718</vpcId>
                 <routeSet>
                    <item><destinationCidrBlock>10.0.0.0/16</destinationCidrBlock><gatewayId>local</gatewayId><state>active</state></item>
                 </routeSet>
                 <associationSet>
                    <item><routeTableAssociationId>rtbassoc-0123</routeTableAssociationId><routeTableId>rtb-99887766554433221</routeTableId><main>true</main></item>
                 </associationSet>
                 <tagSet/>
              </item>
           </routeTableSet>
        </DescribeRouteTablesResponse>
        """

    /// With VGW route propagation on, AWS lists a propagated route beside the static one for
    /// the same prefix, in either order: the static one is the managed one, whatever the order.
    @Test func propagatedRoutesAreNeverTheManagedOne() throws {
        let propagated = "<item><destinationCidrBlock>172.16.0.0/16</destinationCidrBlock><gatewayId>vgw-0123456789abcdef0</gatewayId><state>active</state><origin>EnableVgwRoutePropagation</origin></item>"
        let ours = "<item><destinationCidrBlock>172.16.0.0/16</destinationCidrBlock><instanceId>i-0123456789abcdef0</instanceId><networkInterfaceId>eni-0aaaabbbbccccdddd</networkInterfaceId><state>active</state><origin>CreateRoute</origin></item>"
        for routes in [propagated + ours, ours + propagated, propagated] {
            let xml = "<DescribeRouteTablesResponse><routeTableSet><item><routeTableId>rtb-1</routeTableId><routeSet>\(routes)</routeSet></item></routeTableSet></DescribeRouteTablesResponse>"
            let t = try #require(try XMLElement.parse(Array(xml.utf8)).items("routeTableSet").compactMap(EC2Client.routeTable).first)
            let managed = t.route(to: "172.16.0.0/16")
            #expect(managed?.networkInterfaceId == (routes.contains("CreateRoute") ? "eni-0aaaabbbbccccdddd" : nil))
            #expect(managed?.gatewayTarget == nil)
            #expect(t.routes(to: "172.16.0.0/16").contains { $0.gatewayTarget == "vgw-0123456789abcdef0" && !$0.isStatic })
        }
    }

    /// The interface a route names is chosen by device index, not by the listing order.
    @Test func instanceInterfacesAreChosenByDeviceIndex() throws {
        let primary = "<item><networkInterfaceId>eni-primary</networkInterfaceId><privateIpAddress>10.0.1.5</privateIpAddress><attachment><deviceIndex>0</deviceIndex></attachment></item>"
        let second = "<item><networkInterfaceId>eni-second</networkInterfaceId><privateIpAddress>10.0.2.5</privateIpAddress><attachment><deviceIndex>1</deviceIndex></attachment></item>"
        for set in [primary + second, second + primary] {
            let xml = "<DescribeInstancesResponse><reservationSet><item><instancesSet><item><instanceId>i-1</instanceId><privateIpAddress>10.0.1.5</privateIpAddress><networkInterfaceSet>\(set)</networkInterfaceSet></item></instancesSet></item></reservationSet></DescribeInstancesResponse>"
            let root = try XMLElement.parse(Array(xml.utf8))
            let i = try #require(root.items("reservationSet").flatMap { $0.items("instancesSet") }.compactMap(EC2Client.instance).first)
            #expect(i.networkInterface() == "eni-primary")
            #expect(i.networkInterface(deviceIndex: 1) == "eni-second")
            #expect(i.networkInterface(deviceIndex: 2) == nil)
            // Without device indexes the primary is the interface with the instance's address.
            let bare = set.replacingOccurrences(of: "<attachment><deviceIndex>0</deviceIndex></attachment>", with: "")
                .replacingOccurrences(of: "<attachment><deviceIndex>1</deviceIndex></attachment>", with: "")
            let root2 = try XMLElement.parse(Array(xml.replacingOccurrences(of: set, with: bare).utf8))
            let i2 = try #require(root2.items("reservationSet").flatMap { $0.items("instancesSet") }.compactMap(EC2Client.instance).first)
            #expect(i2.networkInterface() == "eni-primary")
        }
    }

    @Test func describeRouteTablesWithPagination() throws {
        let root = try XMLElement.parse(Array(Self.describeRouteTablesPage1.utf8))
        let tables = root.items("routeTableSet").compactMap(EC2Client.routeTable)
        #expect(root.string("nextToken") == "eyJ2IjoiMiIsImMiOiJ0b2tlbiJ9")
        #expect(tables.count == 1)
        let t = try #require(tables.first)
        #expect(t.id == "rtb-1122334455667788a")
        #expect(t.vpcId == "vpc-0a1b2c3d4e5f60718")
        #expect(t.routes.count == 3)
        #expect(t.tags == ["Name": "private-a", "switchman:managed": "true"])
        let vpn = try #require(t.route(to: "172.31.0.0/16"))
        #expect(vpn.instanceId == "i-0123456789abcdef0")
        #expect(vpn.points(to: .instance("i-0123456789abcdef0")))
        #expect(vpn.points(to: .networkInterface("eni-0aaaabbbbccccdddd")))
        #expect(!vpn.points(to: .instance("i-0ffffffffffffffff")))
        let v6 = try #require(t.route(to: "2001:db8:1234:1a00::/56"))
        #expect(v6.state == "blackhole")
        // The VPC's local route (origin CreateRouteTable) is listed but never ours to manage.
        #expect(t.routes(to: "10.0.0.0/16").first?.gatewayId == "local")
        #expect(t.route(to: "10.0.0.0/16") == nil)
        #expect(t.associations.first?.subnetId == "subnet-0123456789abcdef1")
        #expect(t.associations.first?.main == false)

        let root2 = try XMLElement.parse(Array(Self.describeRouteTablesPage2.utf8))
        #expect(root2.string("nextToken") == nil)
        let t2 = try #require(root2.items("routeTableSet").compactMap(EC2Client.routeTable).first)
        #expect(t2.associations.first?.main == true)
        #expect(t2.tags.isEmpty)
    }

    @Test func ec2ErrorBody() throws {
        let body = """
            <?xml version="1.0" encoding="UTF-8"?>
            <Response><Errors><Error><Code>InvalidRouteTableID.NotFound</Code><Message>The routeTable ID 'rtb-0000000000000000f' does not exist</Message></Error></Errors><RequestID>ea966190-f9aa-478e-9ede-example</RequestID></Response>
            """
        let e = AWSError.parse(service: "ec2", action: "ReplaceRoute", status: 400, body: Array(body.utf8), headerRequestID: nil)
        #expect(e.code == "InvalidRouteTableID.NotFound")
        #expect(e.message.contains("rtb-0000000000000000f"))
        #expect(e.requestID == "ea966190-f9aa-478e-9ede-example")
        #expect(e.httpStatus == 400)
        #expect(RetryPolicy.classify(e) == .client)

        let throttle = """
            <Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>5ad0a8a4-b1a9-4a8c-8e7d-example</RequestID></Response>
            """
        let t = AWSError.parse(service: "ec2", action: "CreateRoute", status: 503, body: Array(throttle.utf8), headerRequestID: nil)
        #expect(t.code == "RequestLimitExceeded")
        #expect(RetryPolicy.classify(t) == .throttled)
    }

    @Test func route53ErrorBodyAndNonXMLBodies() throws {
        let body = """
            <?xml version="1.0"?>
            <ErrorResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>b25f48e8-84fd-11e6-80d9-example</RequestId></ErrorResponse>
            """
        let e = AWSError.parse(service: "route53", action: "ChangeResourceRecordSets", status: 400, body: Array(body.utf8), headerRequestID: "hdr")
        #expect(e.code == "Throttling")
        #expect(e.requestID == "b25f48e8-84fd-11e6-80d9-example")
        #expect(RetryPolicy.classify(e) == .throttled)

        let invalid = """
            <ErrorResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><Error><Type>Sender</Type><Code>InvalidChangeBatch</Code><Message>[Tried to create resource record set [name='vpn.example.internal.', type='A'] but it already exists]</Message></Error><RequestId>3d3c0f1e-example</RequestId></ErrorResponse>
            """
        let i = AWSError.parse(service: "route53", action: "ChangeResourceRecordSets", status: 400, body: Array(invalid.utf8), headerRequestID: nil)
        #expect(i.code == "InvalidChangeBatch")
        #expect(RetryPolicy.classify(i) == .client)

        // A load balancer's HTML 502 or an empty 429 still becomes a typed error.
        let html = AWSError.parse(service: "ec2", action: "DescribeRouteTables", status: 502, body: Array("<html><body>Bad Gateway".utf8), headerRequestID: "rid-1")
        #expect(html.code == "HTTP502")
        #expect(html.requestID == "rid-1")
        #expect(RetryPolicy.classify(html) == .serverError)
        let empty = AWSError.parse(service: "ec2", action: "DescribeRouteTables", status: 429, body: [], headerRequestID: nil)
        #expect(RetryPolicy.classify(empty) == .throttled)
    }

    @Test func describeInstancesAndInterfaces() throws {
        let instances = """
            <DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
              <requestId>8f7724cf-496f-496e-8fe3-example</requestId>
              <reservationSet>
                <item>
                  <reservationId>r-1234567890abcdef0</reservationId>
                  <ownerId>123456789012</ownerId>
                  <groupSet/>
                  <instancesSet>
                    <item>
                      <instanceId>i-1234567890abcdef0</instanceId>
                      <imageId>ami-bff32ccc</imageId>
                      <instanceState><code>16</code><name>running</name></instanceState>
                      <privateDnsName>ip-192-168-1-88.eu-west-1.compute.internal</privateDnsName>
                      <instanceType>t3.micro</instanceType>
                      <placement><availabilityZone>eu-west-1c</availabilityZone><tenancy>default</tenancy></placement>
                      <subnetId>subnet-56f5f633</subnetId>
                      <vpcId>vpc-11112222</vpcId>
                      <privateIpAddress>192.168.1.88</privateIpAddress>
                      <sourceDestCheck>false</sourceDestCheck>
                      <tagSet><item><key>switchman:role</key><value>vpn</value></item></tagSet>
                      <networkInterfaceSet>
                        <item>
                          <networkInterfaceId>eni-0f62d866</networkInterfaceId>
                          <subnetId>subnet-56f5f633</subnetId>
                          <privateIpAddress>192.168.1.88</privateIpAddress>
                        </item>
                      </networkInterfaceSet>
                    </item>
                  </instancesSet>
                </item>
              </reservationSet>
              <nextToken>next-page-please</nextToken>
            </DescribeInstancesResponse>
            """
        let root = try XMLElement.parse(Array(instances.utf8))
        let list = root.items("reservationSet").flatMap { $0.items("instancesSet") }.compactMap(EC2Client.instance)
        #expect(root.string("nextToken") == "next-page-please")
        let i = try #require(list.first)
        #expect(i.id == "i-1234567890abcdef0")
        #expect(i.state == "running")
        #expect(i.availabilityZone == "eu-west-1c")
        #expect(i.privateIpAddress == "192.168.1.88")
        #expect(i.sourceDestCheck == false)
        #expect(i.networkInterfaceIds == ["eni-0f62d866"])
        #expect(i.tags["switchman:role"] == "vpn")

        let enis = """
            <DescribeNetworkInterfacesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
              <requestId>fc45294c-006b-457b-bab9-example</requestId>
              <networkInterfaceSet>
                <item>
                  <networkInterfaceId>eni-0f62d866</networkInterfaceId>
                  <subnetId>subnet-c53c87ac</subnetId>
                  <vpcId>vpc-cc3c87a5</vpcId>
                  <availabilityZone>api-southeast-2b</availabilityZone>
                  <status>in-use</status>
                  <privateIpAddress>10.0.0.146</privateIpAddress>
                  <sourceDestCheck>true</sourceDestCheck>
                  <attachment><attachmentId>eni-attach-6537fc0c</attachmentId><instanceId>i-22197876</instanceId><deviceIndex>0</deviceIndex><status>attached</status></attachment>
                  <tagSet/>
                </item>
              </networkInterfaceSet>
            </DescribeNetworkInterfacesResponse>
            """
        let eni = try #require(try XMLElement.parse(Array(enis.utf8)).items("networkInterfaceSet").compactMap(EC2Client.networkInterface).first)
        #expect(eni.id == "eni-0f62d866")
        #expect(eni.attachedInstanceId == "i-22197876")
        #expect(eni.status == "in-use")
    }

    /// DescribeInstanceStatus as the API reference shapes it: an impaired instance with a
    /// scheduled reboot and a completed maintenance, and an instance EC2 has not checked yet.
    @Test func instanceStatusesAndScheduledEvents() throws {
        let body = """
            <?xml version="1.0" encoding="UTF-8"?>
            <DescribeInstanceStatusResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
               <requestId>3be1508e-c444-4fef-89cc-0b1223c4f02f</requestId>
               <instanceStatusSet>
                  <item>
                     <instanceId>i-1234567890abcdef0</instanceId>
                     <availabilityZone>us-east-1d</availabilityZone>
                     <instanceState><code>16</code><name>running</name></instanceState>
                     <systemStatus><status>ok</status><details><item><name>reachability</name><status>passed</status></item></details></systemStatus>
                     <instanceStatus><status>impaired</status><details><item><name>reachability</name><status>failed</status>
                        <impairedSince>2026-12-07T10:00:00.000Z</impairedSince></item></details></instanceStatus>
                     <attachedEbsStatus><status>ok</status></attachedEbsStatus>
                     <eventsSet>
                        <item>
                           <instanceEventId>instance-event-0d59937288b749b32</instanceEventId>
                           <code>system-reboot</code>
                           <description>The instance is scheduled for a reboot</description>
                           <notBefore>2026-12-09T02:00:00.000Z</notBefore>
                           <notAfter>2026-12-09T04:00:00Z</notAfter>
                        </item>
                        <item>
                           <instanceEventId>instance-event-0aaaa</instanceEventId>
                           <code>system-maintenance</code>
                           <description>[Completed] Scheduled maintenance</description>
                           <notBefore>2026-12-01T02:00:00.000Z</notBefore>
                        </item>
                     </eventsSet>
                  </item>
                  <item>
                     <instanceId>i-0598c7d356eba48d7</instanceId>
                     <systemStatus><status>initializing</status></systemStatus>
                     <instanceStatus><status>insufficient-data</status></instanceStatus>
                  </item>
               </instanceStatusSet>
            </DescribeInstanceStatusResponse>
            """
        let root = try XMLElement.parse(Array(body.utf8))
        let statuses = root.items("instanceStatusSet").compactMap(EC2Client.instanceStatus)
        try #require(statuses.count == 2)
        #expect(statuses[0].impaired && statuses[0].summary == "instance impaired, system ok, EBS ok")
        #expect(statuses[0].events.map(\.code) == ["system-reboot", "system-maintenance"])
        #expect(statuses[0].events[0].id == "instance-event-0d59937288b749b32" && !statuses[0].events[0].isOver)
        #expect(statuses[0].events[0].notBefore?.timeIntervalSince1970 == 1_796_781_600)
        #expect(statuses[0].events[0].notAfter?.timeIntervalSince1970 == 1_796_788_800)
        #expect(statuses[0].events[1].isOver && statuses[0].events[1].notAfter == nil)
        #expect(!statuses[1].impaired, "insufficient data and initializing are no evidence")
    }

    @Test func addresses() throws {
        let body = """
            <DescribeAddressesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
               <requestId>f7de5e98-491a-4c19-a92d-908d6EXAMPLE</requestId>
               <addressesSet>
                  <item>
                     <publicIp>203.0.113.41</publicIp>
                     <allocationId>eipalloc-08229861</allocationId>
                     <domain>vpc</domain>
                     <instanceId>i-0598c7d356eba48d7</instanceId>
                     <associationId>eipassoc-f0229810</associationId>
                     <networkInterfaceId>eni-ef229886</networkInterfaceId>
                     <networkInterfaceOwnerId>053230519467</networkInterfaceOwnerId>
                     <privateIpAddress>10.0.0.228</privateIpAddress>
                  </item>
                  <item>
                     <publicIp>198.51.100.2</publicIp>
                     <allocationId>eipalloc-1a2b3c4d</allocationId>
                     <domain>vpc</domain>
                  </item>
               </addressesSet>
            </DescribeAddressesResponse>
            """
        let root = try XMLElement.parse(Array(body.utf8))
        let addresses = root.items("addressesSet").compactMap(EC2Client.address)
        #expect(addresses == [
            EC2Address(allocationId: "eipalloc-08229861", publicIp: "203.0.113.41", networkInterfaceId: "eni-ef229886",
                       privateIpAddress: "10.0.0.228", instanceId: "i-0598c7d356eba48d7", associationId: "eipassoc-f0229810"),
            EC2Address(allocationId: "eipalloc-1a2b3c4d", publicIp: "198.51.100.2", networkInterfaceId: nil, privateIpAddress: nil,
                       instanceId: nil, associationId: nil),
        ])
    }

    @Test func route53Responses() throws {
        let change = """
            <?xml version="1.0" encoding="UTF-8"?>
            <ChangeResourceRecordSetsResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/">
               <ChangeInfo><Id>/change/C2682N5HXP0BZ4</Id><Status>PENDING</Status><SubmittedAt>2017-03-10T01:36:41.958Z</SubmittedAt></ChangeInfo>
            </ChangeResourceRecordSetsResponse>
            """
        let info = try Route53Client.changeInfo(XMLElement.parse(Array(change.utf8)))
        #expect(info.id == "C2682N5HXP0BZ4")
        #expect(info.status == "PENDING")

        let list = """
            <ListResourceRecordSetsResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/">
               <ResourceRecordSets>
                  <ResourceRecordSet><Name>vpn-a.example.internal.</Name><Type>A</Type><TTL>60</TTL>
                     <ResourceRecords><ResourceRecord><Value>10.0.1.10</Value></ResourceRecord><ResourceRecord><Value>10.0.1.11</Value></ResourceRecord></ResourceRecords>
                  </ResourceRecordSet>
               </ResourceRecordSets>
               <IsTruncated>true</IsTruncated>
               <MaxItems>1</MaxItems>
               <NextRecordName>vpn-b.example.internal.</NextRecordName>
               <NextRecordType>A</NextRecordType>
            </ListResourceRecordSetsResponse>
            """
        let page = Route53Client.recordSetPage(try XMLElement.parse(Array(list.utf8)))
        #expect(page.recordSets == [ResourceRecordSet(name: "vpn-a.example.internal.", type: "A", ttl: 60, values: ["10.0.1.10", "10.0.1.11"])])
        #expect(page.isTruncated)
        #expect(page.nextRecordName == "vpn-b.example.internal.")
        #expect(page.nextRecordType == "A")
    }

    @Test func changeBatchIsEscapedXML() throws {
        let xml = Route53Client.changeBatchXML([
            RecordChange(.upsert, ResourceRecordSet(name: "a&b.example.internal", type: "TXT", ttl: 30, values: ["\"x<y\""])),
        ], comment: "switchman term/1 index/2")
        let root = try XMLElement.parse(Array(xml.utf8))
        let rrs = try #require(root.find("ResourceRecordSet"))
        #expect(rrs.string("Name") == "a&b.example.internal")
        #expect(rrs.find("Value")?.text == "\"x<y\"")
        #expect(root.find("Action")?.text == "UPSERT")
    }

    @Test func malformedXMLIsAnError() {
        #expect(throws: AWSClientError.self) { try XMLElement.parse(Array("<a><b></a>".utf8)) }
    }
}
