/// The AWS partition a Region belongs to: it decides the DNS suffix of every endpoint and
/// where Route 53, a global service, lives and is signed.
public enum AWSPartition: String, Sendable, CaseIterable {
    case aws
    case awsCN = "aws-cn"
    case awsUSGov = "aws-us-gov"

    public init(region: String) {
        if region.hasPrefix("cn-") {
            self = .awsCN
        } else if region.hasPrefix("us-gov-") {
            self = .awsUSGov
        } else {
            self = .aws
        }
    }

    public var dnsSuffix: String { self == .awsCN ? "amazonaws.com.cn" : "amazonaws.com" }

    /// Route 53's one endpoint in this partition, and the Region its requests are signed for.
    public func route53(fips: Bool) -> (endpoint: String, signingRegion: String) {
        switch self {
        case .aws: return (fips ? "https://route53-fips.amazonaws.com" : "https://route53.amazonaws.com", "us-east-1")
        case .awsCN: return ("https://route53.amazonaws.com.cn", "cn-northwest-1")
        case .awsUSGov: return ("https://route53.us-gov.amazonaws.com", "us-gov-west-1")
        }
    }

    /// EC2's endpoint in `region`. FIPS endpoints exist in the US, Canada and GovCloud
    /// Regions only; elsewhere asking for one is a configuration error the caller reports.
    public static func ec2Endpoint(region: String, fips: Bool) -> String {
        let partition = AWSPartition(region: region)
        return "https://\(fips ? "ec2-fips" : "ec2").\(region).\(partition.dnsSuffix)"
    }

    /// Whether EC2 has a FIPS endpoint in `region`.
    public static func hasEC2FIPS(region: String) -> Bool {
        region.hasPrefix("us-") || region.hasPrefix("ca-")
    }
}

/// Where each service's calls go when not to AWS's public endpoint (tests, a VPC interface
/// endpoint, a proxy): a default per service and overrides per Region.
public struct EndpointOverrides: Sendable, Equatable {
    /// Every service, every Region (the old single `aws.endpoint`).
    public var all: String?
    public var ec2: String?
    public var route53: String?
    /// EC2 per Region, e.g. `us-west-2: https://vpce-….ec2.us-west-2.vpce.amazonaws.com`.
    public var ec2ByRegion: [String: String]

    public init(all: String? = nil, ec2: String? = nil, route53: String? = nil, ec2ByRegion: [String: String] = [:]) {
        self.all = all
        self.ec2 = ec2
        self.route53 = route53
        self.ec2ByRegion = ec2ByRegion
    }

    public func ec2(region: String) -> String? { ec2ByRegion[region] ?? ec2 ?? all }
    public var route53Endpoint: String? { route53 ?? all }
}
